from visionflow.cli import entry

entry()
