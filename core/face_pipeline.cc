// Placeholder: implemented by the core issue (#3).
