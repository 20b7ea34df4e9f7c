"""The engine: pure functions on arrays, no Label Studio, no Flask, no files but the caches it is given."""
