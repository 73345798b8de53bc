"""Document ingestion: parse, chunk, embed and store files in Chroma, incrementally and safely."""

from ingest.config import IngestConfig, load_config, resolve_home
from ingest.errors import FileRejected, IngestError
from ingest.loaders import Section, load_file
from ingest.manifest import FileRecord
from ingest.pipeline import IngestReport, discover, extracted_text, ingest, list_documents, remove_documents
from ingest.store import StoreWatcher

__all__ = [
    "FileRecord",
    "FileRejected",
    "IngestConfig",
    "IngestError",
    "IngestReport",
    "Section",
    "StoreWatcher",
    "discover",
    "extracted_text",
    "ingest",
    "list_documents",
    "load_config",
    "load_file",
    "remove_documents",
    "resolve_home",
]
