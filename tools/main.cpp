#include <iostream>
int main() { std::cout << "codebook\n"; return 0; }
