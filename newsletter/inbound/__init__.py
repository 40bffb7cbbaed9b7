"""Returned mail: bounces, complaints and mailto unsubscribes, read and acted on."""
