from vemo.extract.cli import main

main()
