from pixpipe.cli import app

app()
