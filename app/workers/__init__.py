"""Worker processes: the wire codec, the lifecycle events and one supervisor."""
