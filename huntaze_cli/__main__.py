from huntaze_cli.cli import main

main()
