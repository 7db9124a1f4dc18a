"""The taskstream command line."""
