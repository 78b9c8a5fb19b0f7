"""The BSD dump on-media format as Linux dump/restore 0.4b47 write and read it.

This package knows bytes only: headers, directory entries, inode maps and the
record stream. It never touches a file system or a device.
"""
