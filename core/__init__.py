"""The domain, free of network and database I/O: windows, pacing, retries, rendering, messages."""
