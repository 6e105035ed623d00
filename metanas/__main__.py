import signal

from metanas.run_store import note_stop  # stdlib only: a Ctrl-C during the imports below is remembered

for _sig in (signal.SIGINT, signal.SIGTERM):
    if signal.getsignal(_sig) is not signal.SIG_IGN:
        signal.signal(_sig, note_stop)

from metanas.app import main  # noqa: E402

main()
