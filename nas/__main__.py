from nas.cli import main

main(prog_name="nas")
