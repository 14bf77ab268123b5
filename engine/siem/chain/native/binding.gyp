{
  "targets": [
    {
      "target_name": "viw_merkle",
      "sources": ["merkle.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
