"""The `mlcore` console command. Library code never imports this package."""
