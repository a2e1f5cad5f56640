"""The chat room: conversations list, conversation view, composer, model bar and the
settings panel, all rendering one :class:`~ui.chat.chat_view_model.ChatViewModel`."""
