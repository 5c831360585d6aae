"""The only code that reads the host. Everything here returns Fact objects or plain data."""
