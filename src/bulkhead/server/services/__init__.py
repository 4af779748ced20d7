"""Services: the layer where authorization and business rules live, over the models."""
