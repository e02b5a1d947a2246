"""lmforge.heads"""
