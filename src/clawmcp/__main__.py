from clawmcp.cli import main

main()
