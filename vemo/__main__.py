from vemo.train import main

main()
