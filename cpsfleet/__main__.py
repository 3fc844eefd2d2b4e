from cpsfleet.cli import main

main()
