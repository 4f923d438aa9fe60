"""The paper's data sets on any machine.

* :mod:`flaimsim.datasets.store`: where data lives. The small sets ship inside the package
  (``files/``: Adult in the private-pgm format, the raw Magic and Marketing files); the large
  ones are fetched once into the data cache (``$FLAIMSIM_DATA``).
* :mod:`flaimsim.datasets.catalog`: the large sets' public sources, pinned digests and
  documented row counts.
* :mod:`flaimsim.datasets.fetch`: ``flaimsim data fetch``: download, verify, move into place.

Provenance and licences: ``files/README.md`` and ``docs/data.md``.
"""
