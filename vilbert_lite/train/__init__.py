"""The one training engine every run goes through, and the checkpoint / RNG state it keeps."""
