"""The Models tab: installed library and the hub view."""
