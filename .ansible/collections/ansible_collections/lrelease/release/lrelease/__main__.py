from lrelease.cli import main

main()
