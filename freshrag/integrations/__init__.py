"""Retrievers for the frameworks RAG apps are built with (LangChain, LlamaIndex), on the client."""
