"""Azure Blob Storage: the connector (`connector`, on azure-storage-blob) and its data path
(`rest`, Get Blob over `bascule.connectors.http`)."""
