"""Where alerts go besides the `alerts` topic: Slack, files."""
