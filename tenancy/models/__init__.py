"""What a tenant's model is: the zoo, Hugging Face folders and cached ids, test folders."""
