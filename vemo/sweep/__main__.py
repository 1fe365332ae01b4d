from vemo.sweep.cli import main

main()
