from deployq.sizes import format_bytes


def test_sizes_read_as_binary_units() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(25 * 1024 * 1024) == "25.0 MiB"
    assert format_bytes(3 * 1024**5) == "3072.0 TiB"
