"""ESP-PPQ's ``esp_ppq.quantization`` path; only :mod:`espq.quantization.analyse` is provided."""
