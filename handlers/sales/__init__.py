"""Flash sales (秒杀): tiered early access, the start post with its claim button, claims."""
