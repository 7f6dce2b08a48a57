"""The zoo: foreign models ported to JAX (LivePortrait, JoyVASA), loaded from their released weights."""
