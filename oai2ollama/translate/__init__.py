"""Pure translation between the three API dialects and the OpenAI-compatible upstream.

Nothing in this package performs I/O or reads settings. Requests from every dialect are
turned into OpenAI chat/completions/embeddings requests; every upstream answer, streamed or
not, is read into dialect-neutral `answer.Piece`s, which each dialect's encoder renders.
"""
