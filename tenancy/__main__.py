from tenancy.cli.main import main

main()
