"""The fixed vocabulary of the synthetic catalogue: categories, their brands, price levels and title words.

Plain Python data, so the generator's Spark expressions can embed it as literals. Brands are listed from the
cheapest to the dearest: a brand's position sets its price tier, which is how a user's price level becomes a
brand preference. Brand names are unique across categories so that a brand alone hints at its category.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One category of the synthetic shop.

    Attributes:
        name: The category as stored in the products table.
        mean_price: The centre of the category's log-normal price distribution.
        brands: 3-8 brands, cheapest first.
        nouns: What the products are called; one goes into each title.
        adjectives: Category-specific qualifiers; one goes into each title.
    """

    name: str
    mean_price: float
    brands: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("Smartphones", 420.0, ("Nokara", "Vivanta", "Zentro", "Qubix", "Pixelon", "Aurelia"),
             ("Smartphone", "Phone", "Handset"), ("5G", "Dual-SIM", "Foldable", "Compact", "Rugged")),
    Category("Laptops", 950.0, ("Compaxa", "Lenvar", "Ultrabyte", "Delmont", "Azuris"),
             ("Laptop", "Notebook", "Ultrabook"), ("Thin", "Gaming", "Convertible", "Business", "OLED")),
    Category("Headphones", 110.0, ("Sonix", "Beatline", "Audiora", "Bassway", "Klarton", "Hushwave"),
             ("Headphones", "Earbuds", "Headset"),
             ("Wireless", "Noise-Cancelling", "Over-Ear", "Sport", "Studio")),
    Category("Televisions", 680.0, ("Visio", "Telefunk", "Panorama", "Lumina"),
             ("TV", "Television", "Smart TV"), ("4K", "OLED", "QLED", "55-inch", "HDR")),
    Category("Kitchen Appliances", 140.0, ("Kitcha", "Brevant", "Moulinex", "Cuisina", "Smeggo"),
             ("Blender", "Toaster", "Kettle", "Coffee Machine", "Mixer"),
             ("Stainless", "Digital", "Retro", "High-Speed", "Compact")),
    Category("Cookware", 55.0, ("Panfield", "Ironhearth", "Castella", "Le Cuiset"),
             ("Frying Pan", "Saucepan", "Wok", "Dutch Oven", "Skillet"),
             ("Non-Stick", "Cast-Iron", "Ceramic", "Copper", "Induction")),
    Category("Furniture", 320.0,
             ("Hemnor", "Oakridge", "Woodlane", "Nordhus", "Casalto", "Velmora", "Arteon"),
             ("Sofa", "Armchair", "Bookshelf", "Desk", "Dining Table"),
             ("Oak", "Modular", "Scandinavian", "Velvet", "Walnut")),
    Category("Bedding", 65.0, ("Dreamwell", "Slumbra", "Cottonia", "Linara"),
             ("Duvet", "Pillow", "Sheet Set", "Mattress Topper"),
             ("Cotton", "Memory-Foam", "Linen", "Hypoallergenic", "Silk")),
    Category("Running Shoes", 105.0, ("Stridex", "Pacer", "Asiro", "Hokana", "Brookfield", "Nimbra"),
             ("Running Shoes", "Trail Shoes", "Trainers"),
             ("Cushioned", "Lightweight", "Trail", "Racing", "Stability")),
    Category("Outdoor Gear", 85.0, ("Alpinist", "Trekka", "Northway", "Summitra", "Canyon Co"),
             ("Tent", "Backpack", "Sleeping Bag", "Headlamp", "Trekking Poles"),
             ("Waterproof", "Ultralight", "Insulated", "4-Season", "Packable")),
    Category("Books", 16.0, ("Pagewise", "Inkwell Press", "Northstar Books"),
             ("Novel", "Cookbook", "Biography", "Guide", "Thriller"),
             ("Bestselling", "Illustrated", "Paperback", "Hardcover", "Classic")),
    Category("Toys", 28.0, ("Playmo", "Brickly", "Toyvana", "Wonderkid", "Funtastic"),
             ("Building Set", "Puzzle", "Doll", "Board Game", "Plush"),
             ("Educational", "Wooden", "Magnetic", "Glow", "Family")),
    Category("Beauty", 24.0, ("Lumiere", "Glowlab", "Dermaco", "Velvetine", "Aurora Skin"),
             ("Serum", "Moisturiser", "Lipstick", "Shampoo", "Face Mask"),
             ("Hydrating", "Organic", "Matte", "Vitamin-C", "Fragrance-Free")),
    Category("Coffee", 14.0, ("Beanhouse", "Roastwell", "Arabica Co", "Crema Nova"),
             ("Coffee Beans", "Ground Coffee", "Espresso Pods", "Cold Brew"),
             ("Dark-Roast", "Single-Origin", "Decaf", "Fairtrade", "Medium-Roast")),
    Category("Pet Supplies", 32.0, ("Pawsome", "Furwell", "Petvia", "Whiskerly"),
             ("Dog Food", "Cat Litter", "Pet Bed", "Chew Toy", "Leash"),
             ("Grain-Free", "Orthopedic", "Durable", "Natural", "Reflective")),
    Category("Garden", 45.0, ("Greenthumb", "Bloomix", "Yardline", "Terrana", "Hortix"),
             ("Hose", "Planter", "Pruning Shears", "Lawn Mower", "Seed Kit"),
             ("Expandable", "Self-Watering", "Cordless", "Heavy-Duty", "Organic")),
)
