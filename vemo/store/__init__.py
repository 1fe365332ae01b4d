"""The feature store: the one on-disk format that extraction writes and training reads."""
from vemo.store.format import FORMAT_VERSION, ModalitySpec, StoreError
from vemo.store.reader import FeatureStore
from vemo.store.writer import FeatureStoreWriter

__all__ = ["FORMAT_VERSION", "FeatureStore", "FeatureStoreWriter", "ModalitySpec", "StoreError"]
