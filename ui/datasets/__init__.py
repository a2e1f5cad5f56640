"""The Datasets tab: corrections collected in chat, and Teach."""
