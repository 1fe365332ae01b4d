from vemo.train.run import main

main()
