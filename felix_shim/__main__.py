from felix_shim.main import main

main()
