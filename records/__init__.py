"""The records floor: the one owner of every on-disk name and format of a data folder.

Everything else (``pipelines/``, ``model/``, ``provenance/``, ``assets/``, ``apertus/``) stands on this
package and never spells a record's file name or encodes a hashed record itself. It imports nothing
of ours. docs/data-model.md describes the formats precisely enough to reproduce their bytes.

    hashing.py, merkle.py   sha256 helpers; the RFC 6962 Merkle tree (ids, inclusion, consistency)
    canonical.py            canonical JSON: the one encoding of every record inside a version and of all that is hashed
    lineage.py              a version's sealed lineage.json (snapshot, parents, config, code): part of its id
    layout.py               the data folder's top-level layout, staging folders, snapshot names
    assets.py               the asset names (Dagster keys, ``datasets/<asset>/`` folders)
    names.py                every file name of a version and of the data folder, gathered from its owner
    manifest.py             a version's manifest, its id and sealing
    documents.py            the files of a version of documents (shards, tables, step records)
    quality.py, curriculum.py, tokenizer.py, token_shards.py, release.py
                            the files of those assets' versions; token_shards.py the one shard reader
    versions.py             reading the versions of a data folder, their graph and ledger records
    ledger/                 the append-only, signed log: format, files, append, verification, trust
    signing.py, keys.py     Ed25519 signing, C2SP checkpoints; the key folder outside the data folder
    identity.py             the instance identity (``apertus init``)
    pins.py                 per-version pin markers (is this version in the ledger, O(1))
    verified.py             reading a version's file only as its manifest lists it, hash-checked
    lookup.py, lookup_file.py  per-version membership lookups with block hashes (querying; the format)
    lookup_build.py         building and checking those lookups
    catalog/                the DuckDB catalog: filled from verified files, queried read-only
    sql_quote.py            the one quoting of SQL literals and identifiers (values go as parameters)
    requests.py             erasure and opt-out requests; erasure_match.py the one matcher (RE2)
    models.py, finetune.py  the provenance records of trained and fine-tuned model versions
"""
