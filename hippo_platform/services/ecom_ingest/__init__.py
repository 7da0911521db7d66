"""ecom_ingest: the buffer between document uploads and the indexer that writes them
to the cell.

Uploads are accepted as batches and answered at once; the indexer drains pending
batches at its own pace and acknowledges each. With the PostgreSQL store an accepted
batch survives any restart of this process, so an upload that got its 201 is never lost.
"""
