"""Documents: collections of a person's files, chunked, embedded and searchable.

``reading`` takes a stranger's file off the disk within bounds, ``formats`` turns its
bytes into text with structure, ``chunking`` cuts that into overlapping passages,
``store`` keeps them in ``hearth.db`` (FTS5 for BM25, float32 vectors for cosine),
``embedder`` drives the embedding worker, ``indexer`` runs an add, ``search`` answers a
query with passages that name their source, page and offset.
"""
