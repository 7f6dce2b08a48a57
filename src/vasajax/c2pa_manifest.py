"""placeholder"""
def read(path):
    return None
