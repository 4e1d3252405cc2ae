"""What an evaluation leaves behind: metrics.json, a Markdown report and PNG figures."""
