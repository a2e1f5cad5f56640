"""Tools a conversation may call: MCP servers (:mod:`app.tools.mcp_client`), the set a
conversation uses (:mod:`app.tools.toolbox`), and the servers a person has added
(:mod:`app.tools.servers`). The shapes of definitions and calls, shared with the local
server, are :mod:`app.chat.tools`; how calls live in a conversation,
:mod:`app.chat.tool_steps`."""
