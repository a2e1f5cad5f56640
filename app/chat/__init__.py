"""Chat: a conversation turn, the conversation store, export, corrections, templates."""
