"""Static files shipped with Hearth: icons, style sheets, the curated model list."""
