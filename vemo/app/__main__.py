from vemo.app.cli import main

if __name__ == "__main__":  # extraction may start spawned processes, which import this module again
    main()
