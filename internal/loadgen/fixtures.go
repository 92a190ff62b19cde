package loadgen

import (
	"fmt"

	"github.com/syncguard/syncguard/internal/config"
)

// Account is a WhatsApp Business Account as webhooks name it, with the
// secret of the Meta app that signs its notifications.
type Account struct {
	// WABAID is the WhatsApp Business Account id, sent as entry[].id.
	WABAID string
	// PhoneNumberID is the business phone number id in value.metadata.
	PhoneNumberID string
	// DisplayNumber is the business number in value.metadata, digits only.
	DisplayNumber string
	// AppSecret is the HMAC key of X-Hub-Signature-256.
	AppSecret config.Secret
	// Customers are the people who write to this account. At least one is
	// required.
	Customers []Customer
}

// Customer is a WhatsApp user who messages a business.
type Customer struct {
	// WAID is the customer's WhatsApp id, which is their phone number.
	WAID string
	// Name is the profile name WhatsApp reports in value.contacts.
	Name string
}

// Device is a sync client that holds an access token for Subject.
type Device struct {
	// ID is sent in X-Device-ID and in the token's device_id claim.
	ID string
	// Subject is the token's sub claim: the user who owns the device.
	Subject string
}

var customerNames = []string{
	"Test User", "Second Tester", "María José García", "Jürgen Weiß",
	"Zoë Dubois", "Ольга Петрова", "प्रिया शर्मा", "李伟",
	"Tomás O'Brien", "Aylin Yılmaz", "Chidi Okafor", "Nguyễn Văn An",
}

// ExampleAccounts returns n fake business accounts signed with appSecret,
// each with twelve customers. The first account and its first two customers
// are the business and people of the WhatsApp test cases: WABA
// 100000000000001, phone number id 200000000000002, display number
// 15550001111, customers 15550002222 ("Test User") and 15550003333
// ("Second Tester"). All numbers are in the fictional 1555 range.
func ExampleAccounts(appSecret config.Secret, n int) []Account {
	accounts := make([]Account, 0, n)
	for i := range n {
		a := Account{
			WABAID:        fmt.Sprintf("1000000000%05d", i+1),
			PhoneNumberID: fmt.Sprintf("2000000000%05d", i+2),
			DisplayNumber: fmt.Sprintf("15550%03d111", i+1),
			AppSecret:     appSecret,
		}
		for j, name := range customerNames {
			line := 2222 + 1111*j
			if j >= 2 {
				line = 3333 + 577*(j-1)
			}
			waID := fmt.Sprintf("1555%03d%04d", i, line)
			a.Customers = append(a.Customers, Customer{WAID: waID, Name: name})
		}
		accounts = append(accounts, a)
	}
	return accounts
}

// ExampleDevices returns n fake sync devices, two per subject:
// dev-0001 and dev-0002 belong to user-0001, and so on.
func ExampleDevices(n int) []Device {
	devices := make([]Device, 0, n)
	for i := range n {
		devices = append(devices, Device{
			ID:      fmt.Sprintf("dev-%04d", i+1),
			Subject: fmt.Sprintf("user-%04d", i/2+1),
		})
	}
	return devices
}
