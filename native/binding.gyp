{
  # System libraries come through pkg-config, so a missing -dev package fails here with
  # pkg-config's own message instead of as an obscure compile error.
  "targets": [
    {
      "target_name": "tessera_nfq",
      "sources": ["src/addon.c", "src/diag.c", "src/hash.c", "src/napi_errors.c", "src/queue.c", "src/raw.c"],
      "cflags": [
        "-std=gnu11", "-Wall", "-Wextra", "-O2",
        "<!@(pkg-config --cflags libnetfilter_queue libmnl)"
      ],
      "cflags!": ["-O3"],
      "libraries": ["<!@(pkg-config --libs libnetfilter_queue libmnl)"]
    }
  ]
}
