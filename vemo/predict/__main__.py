from vemo.predict.cli import main

main()
