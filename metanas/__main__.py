from metanas.app import main

main()
